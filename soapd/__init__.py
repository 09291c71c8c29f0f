"""soapd: the photometry daemon for the Skynet robotic telescope network."""

__version__ = "0.1.0"
