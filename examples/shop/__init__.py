"""A small shop in the spirit of the seed's MiniProcessFlow: an order receiver hands orders to an
inventory checker over a queue, in another thread. It has one realistic bug to find."""
