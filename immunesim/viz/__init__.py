"""Visualisation: lattice snapshots, frame rendering and animation writers."""
