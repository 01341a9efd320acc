"""Encoders: loading any Hugging Face model (`encoders`), the bundled multilingual-e5-small
converter and tiny test model (`bundled`), and exporting a trained model (`export`)."""
