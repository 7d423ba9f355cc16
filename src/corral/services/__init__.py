"""The application: every read and write of Corral's state goes through here."""
