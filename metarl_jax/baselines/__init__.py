"""Reference policies and exact values that learners are compared against (bandits: index
policies in JAX and the Bayes-optimal value by dynamic programming)."""
