"""mambacode.spectral"""
