"""The contract of every source file and every table, declared once in engine-neutral types
(``schemas.types``); jobs, identity, serving and tests import it, Spark and Arrow translate it."""
