"""The local store: layers unpacked once, images, working containers, mounts.

Several ketch processes share one store at the same time; everything they
coordinate goes through the file system: a SQLite database (WAL, short
``BEGIN IMMEDIATE`` transactions) and ``flock`` locks for long work.
"""
