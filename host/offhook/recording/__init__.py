"""Call recording: encrypted at rest (age), one stereo Ogg/Opus file per call (docs/recording.md)."""
