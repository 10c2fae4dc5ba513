from django.urls import path
from drf_spectacular.views import SpectacularJSONAPIView

from energy.views import AccountView, ConsumeView, HealthView

urlpatterns = [
    path("api/energy/consume/", ConsumeView.as_view(), name="consume"),
    path("api/energy/accounts/<str:account_id>/", AccountView.as_view(), name="account"),
    path("healthz", HealthView.as_view(), name="healthz"),
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="schema"),
]
