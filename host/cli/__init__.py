"""The `nimbus` command line: serving, building, deploying and the admin client."""
