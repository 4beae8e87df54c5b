"""omnicdp pipeline steps (ingest, standardize, curate, publish) and their runtime."""
