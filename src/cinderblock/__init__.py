"""cinderblock: a block storage service speaking the OpenStack Cinder API v3."""

__version__ = "0.1.0"
