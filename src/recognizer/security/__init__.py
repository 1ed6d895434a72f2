"""Security without a transport: TLS certificate files, tokens and tenants, exposure.

No grpc here: the gRPC server (transport/auth.py, transport/credentials.py) and any
other front end use the same pieces, each imported from its module (this package
imports nothing itself, so a client that needs only addresses.py stays light).

    policy.py        Security: all of it, built once from SecuritySettings and shared
    auth.py          Authenticator.authenticate(authorization, certificate_name) -> Tenant,
                     or UnauthenticatedError; may_use(tenant, model)
    tokens.py        the tokens file (tenant:token [models] lines), re-read on change;
                     constant-time token checks
    certificates.py  the server's certificate, key and client CA: checked, re-read on change
    addresses.py     is_loopback(host): whether an address is private to the machine
"""
