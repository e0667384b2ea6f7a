"""Lakehouse tables, schemas, validation and loaders."""
