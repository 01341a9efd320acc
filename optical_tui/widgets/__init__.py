"""Dashboard widgets: table cells, plots and the worker status bar."""
