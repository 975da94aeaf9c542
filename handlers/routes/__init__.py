"""One Powertools Router per API resource; ``handlers.api`` includes them all."""
