"""The bus: NATS connection, JetStream streams and consumers, the key registry, events."""
