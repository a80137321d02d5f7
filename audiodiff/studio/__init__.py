"""`audiodiff studio`: a local web page on the library (app.py), its jobs (jobs.py) and what it reads of models."""
