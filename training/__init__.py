"""mambacode.training"""
