"""The COOEE channel: transport interface, in-process and libp2p implementations, durable outbox."""
