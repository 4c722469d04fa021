"""mambacode.probing"""
