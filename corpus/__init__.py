"""mambacode.corpus"""
