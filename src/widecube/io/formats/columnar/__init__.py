"""Columnar readers: wide Parquet (one row per cell, one numeric column per gene)."""
