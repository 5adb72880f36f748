"""Ceph RBD driver: volumes are RBD images in one pool (optionally one namespace)."""
