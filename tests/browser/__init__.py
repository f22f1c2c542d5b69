"""Browser tests: every lesson opened, run and clicked through in a real JupyterLab (see lab.py)."""
