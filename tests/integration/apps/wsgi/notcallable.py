application = "not callable"
