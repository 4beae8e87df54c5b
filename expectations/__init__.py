"""Great Expectations suites per layer (``suites``) and the gate that runs them (``gate``)."""
