"""Flask web app: upload a match video, watch the actions found."""
