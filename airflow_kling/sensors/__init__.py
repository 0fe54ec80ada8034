"""The sensor that waits for a Scenario job."""
