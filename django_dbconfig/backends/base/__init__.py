"""What every server family shares: rendering (settings.py), the engines' mixins (asgi.py,
health.py, network.py, demotion.py, credentials.py) and the probes' base (probe.py).
"""
