from django.urls import path

from benchmarks.http_peer.casestudy.views import ConsumeView

urlpatterns = [path("api/energy/consume/", ConsumeView.as_view())]
