"""Datasets: loaders for mask folders, points tables and COCO JSON; the synthetic generator."""
