from django.db import models


class Message(models.Model):
    """A message POSTed through the contact form."""
    name = models.CharField(max_length=100)
    email = models.EmailField()
    body = models.TextField()
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return "%s <%s>" % (self.name, self.email)
