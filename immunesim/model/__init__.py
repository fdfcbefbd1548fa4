"""The model description: cell kinds and markers, zones, parameters. Imports no backend."""
