"""exchange — core of the cross-department data exchange bus.

Settings, Kafka access, the Confluent wire format, encryption and the CLI live here.
Nothing in this package imports ``gateway``, ``schemas``, ``consent`` or ``audit``
(the CLI and gateway app are the composition roots that do).
"""

__version__ = "0.1.0"
