"""The contract of every source file and every table, declared once; jobs and tests import it."""
