"""The app manifest (nimbus.toml) and the tables it is made of, as typed, validated objects."""
