"""cooee-agent: discovers a CHORUS host's GPUs and models and enrols it over the COOEE mesh."""

__version__ = "0.1.0"
