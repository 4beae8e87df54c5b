"""Running the pipeline's steps on a schedule, shaped like an Airflow provider.

- :mod:`~jobs.orchestration.steps`: the step registry, every step declared once and run
  through it by the CLI, the Airflow tasks and the spark-submit application (no Airflow here);
- :mod:`~jobs.orchestration.tasks`: what the DAGs share: task defaults, retry policy, the task
  of a step (:func:`~jobs.orchestration.tasks.spark_step`), assets, the run report task;
- :mod:`~jobs.orchestration.operators`: the SparkSubmitOperator of a step, used when
  ``Settings.spark_submit`` is on;
- ``spark_app/run_step.py``: the application that operator submits;
- :mod:`~jobs.orchestration.outcome`: the file through which that application hands its result
  to the operator;
- :mod:`~jobs.orchestration.run_report`: the report of a run, from its steps' summaries.

Imports go one way: ``tasks`` imports ``steps`` and (when submitting) ``operators``; ``operators``
and the application import ``outcome``; nothing here imports ``tasks``, and ``steps`` imports
no Airflow, so the CLI uses the registry without loading it.
"""
