"""Metrics of certification records: certified accuracy curves, ACR, abstention."""
