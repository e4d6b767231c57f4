def mount_mcp(app, mos, *, insecure_local=False):
    return None
