"""Knowledge distillation from a Transformer sentence embedder (all-MiniLM-L6-v2) into a MambaCode retrieval
encoder: the teacher run offline window by window and cached (`teacher`), the training data and its targets
(`data`), the loss (`losses`), the training entry point (`train`), and the teacher / BM25 / student table on the
project's test pools (`evaluate`)."""
