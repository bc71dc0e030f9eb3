"""The service around the planner: the composition root that wires planner, executor, skills and governance.

`cli` (the `agentml` command), `api` (the planning API and the experiments dashboard), `session` (a plan run plus its
OODA iterations), `jobs` (the Ray-job entrypoint), `settings` (the one place configuration is read) and `demo` (the
churn demo's warehouse). Only this package imports all four of the others.
"""
