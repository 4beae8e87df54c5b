"""The lakehouse runtime every step shares: the Spark session and its jars, Delta I/O, report pages."""
