"""Generic controller runtime (informers, work queue, apply helpers, manager).

Modelled on controller-runtime; knows nothing about MLflow or TrackingServer.
"""
