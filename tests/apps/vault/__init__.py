"""A program full of planted secrets, traced in every mode to prove none of them leaves it."""
