"""The application spark-submit runs for a pipeline step (``run_step.py``); see
jobs.orchestration.operators."""
