"""Built-in code snippets: default inputs for Mamba-2 effective kernels when no corpus is given.

Short, varied programs (Python, JavaScript, TypeScript, Java, Go) written for this package, so that a
report can be produced offline from a checkpoint alone. For conclusions, pass a real corpus
(`mambacode.corpus.read_snippets`).
"""

from __future__ import annotations

DEFAULT_SNIPPETS = [
    '''def binary_search(items, target):
    lo, hi = 0, len(items) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            lo = mid + 1
        else:
            hi = mid - 1
    return -1
''',
    '''class LRUCache:
    """Least-recently-used cache with a fixed capacity."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.data = {}

    def get(self, key, default=None):
        if key not in self.data:
            return default
        value = self.data.pop(key)
        self.data[key] = value
        return value

    def put(self, key, value):
        self.data.pop(key, None)
        if len(self.data) >= self.capacity:
            self.data.pop(next(iter(self.data)))
        self.data[key] = value
''',
    '''import json
from pathlib import Path


def load_config(path, overrides=None):
    text = Path(path).read_text(encoding="utf-8")
    config = json.loads(text)
    for key, value in (overrides or {}).items():
        section, _, name = key.partition(".")
        config.setdefault(section, {})[name] = value
    return config
''',
    '''def word_counts(lines):
    counts = {}
    for line in lines:
        for word in line.lower().split():
            word = word.strip(".,;:!?")
            if word:
                counts[word] = counts.get(word, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
''',
    '''async def fetch_all(session, urls, limit=8):
    semaphore = asyncio.Semaphore(limit)

    async def fetch(url):
        async with semaphore:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.text()

    return await asyncio.gather(*(fetch(u) for u in urls))
''',
    '''function debounce(fn, wait) {
  let timer = null;
  return function (...args) {
    clearTimeout(timer);
    timer = setTimeout(() => fn.apply(this, args), wait);
  };
}

function groupBy(items, key) {
  return items.reduce((acc, item) => {
    const k = typeof key === "function" ? key(item) : item[key];
    (acc[k] = acc[k] || []).push(item);
    return acc;
  }, {});
}
''',
    '''export class EventBus {
  private handlers: Map<string, Array<(payload: unknown) => void>> = new Map();

  on(event: string, handler: (payload: unknown) => void): () => void {
    const list = this.handlers.get(event) ?? [];
    list.push(handler);
    this.handlers.set(event, list);
    return () => this.off(event, handler);
  }

  off(event: string, handler: (payload: unknown) => void): void {
    const list = this.handlers.get(event) ?? [];
    this.handlers.set(event, list.filter((h) => h !== handler));
  }

  emit(event: string, payload: unknown): number {
    const list = this.handlers.get(event) ?? [];
    list.forEach((h) => h(payload));
    return list.length;
  }
}
''',
    '''public final class Matrix {
    private final double[][] values;

    public Matrix(int rows, int cols) {
        this.values = new double[rows][cols];
    }

    public Matrix multiply(Matrix other) {
        int n = values.length, m = other.values[0].length, k = other.values.length;
        Matrix result = new Matrix(n, m);
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < m; j++) {
                double sum = 0.0;
                for (int p = 0; p < k; p++) {
                    sum += values[i][p] * other.values[p][j];
                }
                result.values[i][j] = sum;
            }
        }
        return result;
    }
}
''',
    '''package store

import (
\t"errors"
\t"sync"
)

var ErrNotFound = errors.New("store: key not found")

type Store struct {
\tmu   sync.RWMutex
\titems map[string][]byte
}

func New() *Store {
\treturn &Store{items: make(map[string][]byte)}
}

func (s *Store) Get(key string) ([]byte, error) {
\ts.mu.RLock()
\tdefer s.mu.RUnlock()
\tv, ok := s.items[key]
\tif !ok {
\t\treturn nil, ErrNotFound
\t}
\treturn v, nil
}

func (s *Store) Put(key string, value []byte) {
\ts.mu.Lock()
\tdefer s.mu.Unlock()
\ts.items[key] = value
}
''',
    '''def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Resize images in a folder.")
    parser.add_argument("folder")
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--quality", type=int, default=90, choices=range(1, 101), metavar="1..100")
    parser.add_argument("--dry-run", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path in sorted(Path(args.folder).glob("*.jpg")):
        if args.dry_run:
            print("would resize", path)
            continue
        resize(path, args.width, args.quality)
''',
    '''def topological_sort(graph):
    indegree = {node: 0 for node in graph}
    for targets in graph.values():
        for t in targets:
            indegree[t] = indegree.get(t, 0) + 1
    ready = [n for n, d in indegree.items() if d == 0]
    order = []
    while ready:
        node = ready.pop()
        order.append(node)
        for t in graph.get(node, ()):
            indegree[t] -= 1
            if indegree[t] == 0:
                ready.append(t)
    if len(order) != len(indegree):
        raise ValueError("graph has a cycle")
    return order
''',
    '''const express = require("express");
const app = express();
app.use(express.json());

const todos = new Map();
let nextId = 1;

app.post("/todos", (req, res) => {
  const { title } = req.body;
  if (!title) return res.status(400).json({ error: "title is required" });
  const todo = { id: nextId++, title, done: false };
  todos.set(todo.id, todo);
  res.status(201).json(todo);
});

app.patch("/todos/:id", (req, res) => {
  const todo = todos.get(Number(req.params.id));
  if (!todo) return res.sendStatus(404);
  Object.assign(todo, req.body);
  res.json(todo);
});
''',
]


__all__ = ["DEFAULT_SNIPPETS"]
