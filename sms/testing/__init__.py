"""Test and demo helpers for the sms service (a local Twilio-compatible server)."""
