"""Agent context API and MCP tools over the serving store.

``jobs/publish.py`` fills the store from gold; ``serving.api`` (HTTP) and ``serving.tools`` (MCP)
read it with the rules of ``serving.customers``; ``serving.store`` hides SQLite vs PostgreSQL.
"""
