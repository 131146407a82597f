"""Media helpers shared by the services: ffmpeg, G.711 and WAV, tones, test media."""
