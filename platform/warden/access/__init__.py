"""Access: requests → reviews → time-bound grants (Casbin rules carrying a grant id and an
expiry), break-glass grants with after-the-fact sign-off, and signed webhooks."""
