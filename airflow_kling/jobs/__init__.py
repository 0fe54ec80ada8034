"""A Scenario job's life.

Its status vocabulary, submitting it once, waiting for it, and what its end means to a task (the trigger's
events, the XComs the tasks hand each other).
"""
