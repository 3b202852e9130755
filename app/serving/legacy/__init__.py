"""Legacy Keras files: format sniffing, config checks and named translation rules for Keras 3."""
