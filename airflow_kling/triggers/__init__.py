"""Deferrable waits: a job to end, a slot under the team's limit, a reviewer's answer."""
